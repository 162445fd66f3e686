"""Operating a deployment from the outside: ``doctor`` (is everything the server needs in
place?) and ``probe`` (does a real call through Asterisk get answered and served?)."""
