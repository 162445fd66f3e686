import sys, numpy as np
from infer import DigitModel
from common import load_fsdd
m=DigitModel(sys.argv[1]); spk=sys.argv[2]; C=np.zeros((10,10),int); bad=[]
for d,s,k,x in load_fsdd():
    if s!=spk: continue
    p=int(np.argmax(m.logits(x))); C[d,p]+=1
    if p!=d: bad.append(f"{d}_{s}_{k}->{p}")
print(C); print(" ".join(bad))
