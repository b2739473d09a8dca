# Compares `sample` PNGs made on the GPU with the official fixtures' pixels (uint8), per case.
import json, sys, numpy as np
from PIL import Image
from safetensors.numpy import load_file
root, outs = sys.argv[1], sys.argv[2]
cases = json.load(open(f"{root}/cases.json"))["dit-tiny"]["sampling"]
for k, case in enumerate(cases):
    for prec in ["fp32", "tf32", "bf16"]:
        ref = load_file(f"{root}/dit-tiny/pixels-{k}.safetensors")["pixels"].astype(int)  # (n,3,H,W)
        try:
            got = np.stack([np.asarray(Image.open(f"{outs}/{prec}-{k}/{i}.png").convert("RGB")).transpose(2, 0, 1) for i in range(ref.shape[0])]).astype(int)
        except FileNotFoundError:
            print(f"case {k} {prec}: no output"); continue
        d = np.abs(got - ref)
        print(f"case {k} ({case['sampler']} {case['steps']} steps cfg {case['cfg_scale']}) {prec}: max |Δpixel| {d.max()}, mean {d.mean():.3f}, exact {np.mean(d == 0):.3f}")
