"""The acoustic model a call is heard with: PocketSphinx's wideband US-English model, adapted to
the telephone channel (telephone.py at run time; adaptation.py builds the adaptation offline,
mllr.py and sphinx_files.py are its arithmetic and its file formats)."""
