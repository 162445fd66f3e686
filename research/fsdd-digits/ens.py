"""Average the logits of the seed-0 and seed-1 models of each LOSO fold, test on that fold's speaker."""
import numpy as np
from infer import DigitModel
from common import load_fsdd, SPEAKERS
items=load_fsdd(); tot=[]
for sp in SPEAKERS:
    ms=[DigitModel(f"ft_{sp}.onnx"), DigitModel(f"ft1_{sp}.onnx")]
    ok=[int(np.argmax(sum(m.logits(x) for m in ms))==d) for d,s,k,x in items if s==sp]; tot+=ok
    print(sp, round(np.mean(ok),3))
print("all", round(np.mean(tot),4))
