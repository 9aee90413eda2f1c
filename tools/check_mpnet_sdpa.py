"""Check MPNet's SDPA attention path against eager on the GPU (fp32 forward, then a bf16 backward that must reach the
relative position bias).  Exit 0: keep SDPA; else run with PAPERLIB_MPNET_SDPA=0 (eager).
    python3 tools/check_mpnet_sdpa.py MODEL_DIR"""

import sys

import torch

from paperlib.models import load_model, set_attention

m, tok = load_model(sys.argv[1], num_labels=4)
m.cuda().eval()
enc = tok(["a short text", "a much longer text about many things " * 8], padding=True, return_tensors="pt").to("cuda")
with torch.no_grad():
    fast = m(**enc).logits.double()
    set_attention(m, "eager")
    ref = m(**enc).logits.double()
    set_attention(m, "sdpa")
err = float((fast - ref).norm() / ref.norm())
print("fp32 sdpa vs eager rel err", err)
assert err < 1e-4, err
m.train()
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = m(**enc).logits.float().sum()
loss.backward()
g = m.mpnet.encoder.relative_attention_bias.weight.grad
assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
print("bf16 backward ok, position-bias grad norm", float(g.norm()))
