"""Pictures: heatmap overlays, frame strips and GIFs."""

from vizlab.viz.overlay import (
                                add_caption,
                                clip_overlays,
                                colorize,
                                frame_strip,
                                overlay,
                                save_gif,
                                save_png,
                                to_uint8_image,
)

__all__ = ["add_caption", "clip_overlays", "colorize", "frame_strip", "overlay", "save_gif", "save_mp4", "save_png",
           "to_uint8_image"]
