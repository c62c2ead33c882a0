"""Image-tower speed and embedding agreement of fp32, bf16 and int8 on this CPU (ViT-B-32, random weights).

Usage: ``.venv/bin/python scripts/measure_cpu_precision.py [REPEATS]`` (default 5).  Prints, per
batch size (1, 5, 10 crops at 224 px) and per precision, the median forward time of
``model.visual`` in one process (2 torch threads, interleaved), and the smallest cosine
between each precision's embeddings and fp32's.  bf16 is open_clip's mixed precision (what
``ClipEncoder(precision="bf16")`` loads: ``convert_weights_to_lp``, LayerNorm in fp32).  The figures quoted in
``clip_perception.device.cpu_has_native_bf16`` and README's performance section come from it.
"""

import copy
import statistics
import sys
import time

import torch

from clip_perception.device import cpu_has_native_bf16
from clip_perception.quantize import quantize_linear_int8


def main(repeats: int) -> None:
    import open_clip

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    mixed = copy.deepcopy(model)
    open_clip.model.convert_weights_to_lp(mixed, dtype=torch.bfloat16)  # what precision="bf16" does
    towers = {"fp32": (model.visual, torch.float32),
              "bf16": (mixed.visual, torch.bfloat16),
              "int8": (quantize_linear_int8(copy.deepcopy(model.visual)), torch.float32)}
    print(f"native bf16 instructions: {cpu_has_native_bf16()}; torch {torch.__version__}")
    with torch.inference_mode():
        for bs in (1, 5, 10):
            x = torch.randn(bs, 3, 224, 224, generator=torch.Generator().manual_seed(bs))
            ref = torch.nn.functional.normalize(model.visual(x).float(), dim=-1)
            times = {k: [] for k in towers}
            for _ in range(repeats + 1):  # the first round warms up
                for name, (tower, dtype) in towers.items():
                    t0 = time.perf_counter()
                    tower(x.to(dtype))
                    times[name].append((time.perf_counter() - t0) * 1e3)
            row = []
            for name, (tower, dtype) in towers.items():
                emb = torch.nn.functional.normalize(tower(x.to(dtype)).float(), dim=-1)
                cos = float((emb * ref).sum(-1).min())
                row.append(f"{name} {statistics.median(times[name][1:]):.0f} ms (cos {cos:.5f})")
            print(f"batch {bs:2d}: " + ", ".join(row))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
