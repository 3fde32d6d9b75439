"""Pictures of segmentations: colour masks, overlays, grids and training curves."""

import numpy as np

from fcn_tf.outputs import logits_to_classes

IGNORE_COLOR = (0, 0, 0)


def colorize(mask, colors, ignore_label=255):
    """``[H, W]`` class ids to a ``[H, W, 3]`` uint8 picture (ignored pixels black)."""
    mask = np.asarray(mask)
    table = np.zeros((256, 3), np.uint8)
    table[: len(colors)] = np.asarray(colors, np.uint8)
    table[ignore_label] = IGNORE_COLOR
    return table[np.clip(mask, 0, 255).astype(np.int64)]


def denormalize(image, preprocessing):
    """A normalised ``[H, W, C]`` image back to uint8 RGB for display."""
    image = np.asarray(image, np.float32) * np.float32(preprocessing.std) + np.float32(preprocessing.mean)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def overlay(image, mask, colors, ignore_label=255, alpha=0.5):
    """Blend the colour mask over a uint8 RGB image."""
    color = colorize(mask, colors, ignore_label).astype(np.float32)
    blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * color
    return blended.astype(np.uint8)


def predict_classes(model, images):
    """Class ids of a batch of normalised images (argmax, or logit > 0 for one channel)."""
    return logits_to_classes(np.asarray(model(np.asarray(images, np.float32), training=False)))


def new_figure(figsize):
    """A matplotlib Figure on the Agg canvas, without pyplot.

    Library code must not call ``matplotlib.use`` or touch pyplot's state: that
    would switch the caller's backend (figures stop showing in Jupyter).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _legend(ax, class_names, colors):
    from matplotlib.patches import Patch

    handles = [Patch(color=np.asarray(c) / 255.0, label=n) for n, c in zip(class_names, colors)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)


def save_prediction_grid(path, images, masks, predictions, class_names, colors, ignore_label=255):
    """Save a grid of rows image | ground truth | prediction with a class legend."""
    rows = len(images)
    fig = new_figure((9, 3 * rows))
    axes = fig.subplots(rows, 3, squeeze=False)
    for row, (image, mask, pred) in enumerate(zip(images, masks, predictions)):
        panels = (image, colorize(mask, colors, ignore_label), colorize(pred, colors, ignore_label))
        for col, (panel, title) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
            axes[row, col].imshow(panel)
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(title)
    _legend(axes[0, 2], class_names, colors)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")


def save_curves(path, history):
    """Plot loss and mean IoU (train and validation) per epoch from history rows."""
    epochs = [row["epoch"] for row in history]
    fig = new_figure((10, 3.5))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("loss", "mean_iou")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + key) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
