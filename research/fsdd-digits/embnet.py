"""The Google speech_embedding CNN (openWakeWord's embedding_model.onnx) rebuilt in torch from the ONNX
initializers, so it can be fine-tuned; export back with torch.onnx.export."""
import numpy as np, onnx, torch, torch.nn as nn, torch.nn.functional as F
from onnx import numpy_helper
from common import RES

class EmbNet(nn.Module):
    def __init__(self, path=RES / "embedding_model.onnx"):
        super().__init__()
        g = onnx.load(str(path)).graph
        init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.ops = []; convs = []
        for n in g.node:
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            if n.op_type == "Conv":
                w = init[n.input[1]]; b = init[n.input[2]] if len(n.input) > 2 else None
                pads = a.get("pads", [0, 0, 0, 0])
                c = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], padding=(pads[0], pads[1]), bias=b is not None)
                c.weight.data = torch.tensor(w)
                if b is not None: c.bias.data = torch.tensor(b)
                convs.append(c); self.ops.append(("conv", len(convs) - 1))
            elif n.op_type == "LeakyRelu": self.ops.append(("lrelu", a["alpha"]))
            elif n.op_type == "Max": self.ops.append(("max", float(init[n.input[1]].ravel()[0])))
            elif n.op_type == "MaxPool": self.ops.append(("pool", (tuple(a["kernel_shape"]), tuple(a["strides"]))))
        self.convs = nn.ModuleList(convs)

    def forward(self, x):  # x: (B, 76, 32) -> (B, 96)
        x = x.unsqueeze(1)
        for op, p in self.ops:
            if op == "conv": x = self.convs[p](x)
            elif op == "lrelu": x = F.leaky_relu(x, p)
            elif op == "max": x = torch.clamp_min(x, p)
            else: x = F.max_pool2d(x, p[0], p[1])
        return x.reshape(x.shape[0], 96)

if __name__ == "__main__":
    import common
    _, emb = common._ort()
    x = np.random.default_rng(0).normal(1, 1, (4, 76, 32)).astype(np.float32)
    ref = emb.run(None, {emb.get_inputs()[0].name: x[..., None]})[0].reshape(4, 96)
    with torch.no_grad(): out = EmbNet()(torch.tensor(x)).numpy()
    print("max abs diff", np.abs(out - ref).max(), "ref scale", np.abs(ref).max())
