"""Time smoothlab's bilateral filter per 299 x 299 x 3 image against independent implementations.

Compared, with the same parameters (domain sigma, range sigma, window radius):
- ``smoothlab.filters.bilateral`` (pure torch), CPU, and GPU when ``torch.cuda.is_available()``;
- ``skimage.restoration.denoise_bilateral`` (Cython, one thread; ``sigma_color = sigma_r / 3`` since it
  divides the colour distance by the number of channels; default 10,000 bins);
- OpenCV ``cv2.bilateralFilter`` (float32; its own thread pool; disk window, L1 colour distance),
  if ``opencv-python-headless`` is installed.
Also ``magnify`` (two bilateral passes) with its defaults.

Usage: ``python benchmarks/bench_bilateral.py [--repeats 3] [--threads N] [--batch 8]``
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch

from smoothlab.filters import bilateral
from smoothlab.magnification import magnify

# the timing helpers of every benchmark (this folder is on sys.path when a script here runs)
from _timing import timeit


def _image() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[60:359, 120:419].astype(np.float32) / 255.0)  # 299x299x3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--batch", type=int, default=8, help="batch size for the batched torch timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    img = _image()
    x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    xb = x.expand(args.batch, -1, -1, -1).contiguous()

    print("== machine")
    print(f"platform      {platform.platform()}")
    print(f"processor     {platform.processor() or platform.machine()}")
    print(f"cpu count     {os.cpu_count()}  (torch threads {torch.get_num_threads()})")
    print(f"python        {platform.python_version()}")
    print(f"torch         {torch.__version__}  cuda available: {torch.cuda.is_available()}")
    print(f"numpy         {np.__version__}")
    try:
        import skimage

        print(f"scikit-image  {skimage.__version__}")
    except ImportError:
        skimage = None
    try:
        import cv2

        print(f"opencv        {cv2.__version__}  (threads {cv2.getNumThreads()})")
    except ImportError:
        cv2 = None
    if torch.cuda.is_available():
        print(f"gpu           {torch.cuda.get_device_name(0)}")

    print(f"\n== seconds per 299x299x3 image (median of {args.repeats})")
    for sd, sr in [(3.0, 0.2), (0.5, 0.2)]:
        r = int(np.ceil(3 * sd))
        win = 2 * r + 1
        print(f"-- sigma_d={sd} sigma_r={sr} radius={r} ({win}x{win} window)")
        with torch.no_grad():
            t = timeit(lambda: bilateral(x, sd, sr, radius=r), "cpu", args.repeats)
            print(f"smoothlab  cpu  square, batch 1        {t:8.4f}")
            t = timeit(lambda: bilateral(x, sd, sr, radius=r, window="disk"), "cpu", args.repeats)
            print(f"smoothlab  cpu  disk,   batch 1        {t:8.4f}")
            t = timeit(lambda: bilateral(xb, sd, sr, radius=r), "cpu", args.repeats) / args.batch
            print(f"smoothlab  cpu  square, batch {args.batch:<3d}      {t:8.4f}")
            if torch.cuda.is_available():
                xg, xbg = x.cuda(), xb.cuda()
                t = timeit(lambda: bilateral(xg, sd, sr, radius=r), "cuda", args.repeats)
                print(f"smoothlab  gpu  square, batch 1        {t:8.4f}")
                t = timeit(lambda: bilateral(xbg, sd, sr, radius=r), "cuda", args.repeats) / args.batch
                print(f"smoothlab  gpu  square, batch {args.batch:<3d}      {t:8.4f}")
        xr = x.clone().requires_grad_()
        t = timeit(lambda: bilateral(xr, sd, sr, radius=r).sum().backward(), "cpu", args.repeats)
        print(f"smoothlab  cpu  forward+backward       {t:8.4f}")
        if skimage is not None:
            from skimage.restoration import denoise_bilateral

            t = timeit(
                lambda: denoise_bilateral(
                    img, win_size=win, sigma_color=sr / 3, sigma_spatial=sd, channel_axis=-1, mode="edge"
                ),
                "cpu",
                args.repeats,
            )
            print(f"skimage    cpu  square (1 thread)      {t:8.4f}")
        if cv2 is not None:
            t = timeit(lambda: cv2.bilateralFilter(img, win, sr, sd), "cpu", args.repeats)
            print(f"opencv     cpu  disk, L1 colour        {t:8.4f}")

    print("-- magnify (defaults: sigma_d=3, sigma_r=0.2, radius 9; two bilateral passes)")
    with torch.no_grad():
        t = timeit(lambda: magnify(x), "cpu", args.repeats)
        print(f"smoothlab  cpu  magnify, batch 1       {t:8.4f}")
        if torch.cuda.is_available():
            xg = x.cuda()
            t = timeit(lambda: magnify(xg), "cuda", args.repeats)
            print(f"smoothlab  gpu  magnify, batch 1       {t:8.4f}")


if __name__ == "__main__":
    main()
