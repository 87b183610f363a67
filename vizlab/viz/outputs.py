"""Per-sample output files of the explain loop: overlays (PNG; strip + GIF for clips) and raw maps."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from vizlab.io import write_bytes_atomic
from vizlab.naming import safe_name
from vizlab.viz.overlay import add_caption, clip_overlays, frame_strip, overlay, save_gif, save_mp4, save_png


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    write_bytes_atomic(path, buf.getvalue())


class SampleWriter:
    """Writes one sample's pictures and arrays under `root`; returns paths relative to `root`.

    Images: heatmaps/<index>_<name>.png with a caption bar. Clips: heatmaps/<index>_<name>_strip.png
    (frames in rows of 8), heatmaps/<index>_<name>.gif and .mp4. Maps (when save_maps):
    maps/<index>_<name>_saliency.npy ([0, 1]) and _raw.npy (signed, unnormalised). Method figures
    (e.g. optimisation curves, HR-CAM's pipeline): heatmaps/<index>_<name>_<figure>.png.
    """

    def __init__(self, root: Path, save_overlays: bool = True, save_maps: bool = False, power: float = 0.8) -> None:
        self.root, self.save_overlays, self.save_maps, self.power = Path(root), save_overlays, save_maps, power

    def write(self, index: int, name: str, image: torch.Tensor, saliency: torch.Tensor, raw: torch.Tensor,
              caption: str) -> list[str]:
        stem = self.stem(index, name)
        files: list[str] = []
        if self.save_overlays:
            files += self.write_overlay(stem, image, saliency, caption)
        if self.save_maps:
            for kind, tensor in (("saliency", saliency), ("raw", raw)):
                rel = f"maps/{stem}_{kind}.npy"
                save_npy(self.root / rel, tensor.detach().float().cpu().numpy())
                files.append(rel)
        return files

    @staticmethod
    def stem(index: int, name: str) -> str:
        return f"{index:05d}_{safe_name(name)}"

    def write_figures(self, index: int, name: str, figures: dict[str, np.ndarray]) -> dict[str, str]:
        """A method's extra pictures (figure name → uint8 RGB array) as heatmaps/<stem>_<figure>.png,
        when overlays are saved. Returns figure name → path relative to the root."""
        if not self.save_overlays:
            return {}
        stem, out = self.stem(index, name), {}
        for figure, picture in figures.items():
            rel = f"heatmaps/{stem}_{safe_name(figure)}.png"
            save_png(self.root / rel, picture)
            out[figure] = rel
        return out

    def write_overlay(self, stem: str, image: torch.Tensor, saliency: torch.Tensor, caption: str) -> list[str]:
        if saliency.dim() == 2:
            save_png(self.root / "heatmaps" / f"{stem}.png", add_caption(overlay(image.cpu(), saliency, self.power),
                                                                         caption))
            return [f"heatmaps/{stem}.png"]
        frames = clip_overlays(image.cpu(), saliency, self.power)
        save_png(self.root / "heatmaps" / f"{stem}_strip.png", add_caption(frame_strip(frames), caption))
        save_gif(self.root / "heatmaps" / f"{stem}.gif", frames)
        save_mp4(self.root / "heatmaps" / f"{stem}.mp4", frames)
        return [f"heatmaps/{stem}_strip.png", f"heatmaps/{stem}.gif", f"heatmaps/{stem}.mp4"]
