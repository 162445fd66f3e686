"""PocketSphinx per-digit scores: one single-word grammar decoder per digit; best_score per digit."""
import sys, time, numpy as np
from pathlib import Path
import pocketsphinx
from common import *
WORDS=["zero","one","two","three","four","five","six","seven","eight","nine"]
md=Path(pocketsphinx.get_model_path())/"en-us"
decs=[]
for w in WORDS:
    d=pocketsphinx.Decoder(hmm=str(md/"en-us"), dict=str(md/"cmudict-en-us.dict"), samprate=16000, logfn="/dev/null", lm=None)
    d.add_jsgf_string("g", f"#JSGF V1.0;\ngrammar g;\npublic <g> = {w} ;\n"); d.activate_search("g"); decs.append(d)
# also the free choice decoder (what the engine does, single digit)
fd=pocketsphinx.Decoder(hmm=str(md/"en-us"), dict=str(md/"cmudict-en-us.dict"), samprate=16000, logfn="/dev/null", lm=None)
fd.add_jsgf_string("g", "#JSGF V1.0;\ngrammar g;\npublic <g> = ( "+" | ".join(WORDS+["oh"])+" ) ;\n"); fd.activate_search("g")
items=load_fsdd(); S=[]; P=[]; t=time.time()
for dg,s,k,x in items:
    raw=np.clip(to16k(x),-32768,32767).astype(np.int16).tobytes()
    sc=[]
    for d in decs:
        d.start_utt(); d.process_raw(raw, False, True); d.end_utt()
        h=d.hyp(); sc.append(h.best_score if h is not None else -1e9)
    S.append(sc)
    fd.start_utt(); fd.process_raw(raw, False, True); fd.end_utt(); h=fd.hyp()
    w=h.hypstr.split()[0] if h and h.hypstr else ""
    P.append(WORDS.index(w) if w in WORDS else (0 if w=="oh" else -1))
S=np.array(S,float); P=np.array(P); y=np.array([i[0] for i in items]); spk=np.array([i[1] for i in items])
print("s/utt",(time.time()-t)/len(items))
print("single-digit grammar acc", (P==y).mean(), {s:(P[spk==s]==y[spk==s]).mean() for s in SPEAKERS})
print("argmax per-word score acc", (S.argmax(1)==y).mean(), {s:(S.argmax(1)[spk==s]==y[spk==s]).mean() for s in SPEAKERS})
np.savez("ps_scores.npz", S=S, P=P, y=y, spk=spk)
