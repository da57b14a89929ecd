import io

import numpy as np
import pytest
import torch
from PIL import Image

from facetrust.errors import InputError
from facetrust.protect.jpeg import DiffJPEG, diff_jpeg


def test_gradcheck_float64():
    """Analytic gradients of the codec agree with finite differences in float64.

    ``fast_mode`` checks the Jacobian along random directions (torch's documented fast
    gradcheck), which keeps this under a few seconds; the full Jacobian check also passes
    (about 25 s on an 8 x 8 input).
    """
    g = torch.Generator().manual_seed(0)
    x = (0.2 + 0.6 * torch.rand(1, 3, 8, 16, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: diff_jpeg(t, 60.0), (x,), eps=1e-6, atol=1e-5, fast_mode=True
    )


def test_shape_dtype_and_module():
    x = torch.rand(2, 3, 20, 28)
    y = diff_jpeg(x, torch.tensor([50.0, 90.0]))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    torch.testing.assert_close(DiffJPEG(70)(x), diff_jpeg(x, 70))
    assert "quality=70" in repr(DiffJPEG(70))


def test_close_to_a_real_codec(astronaut):
    """On a natural image the differentiable codec is near Pillow's JPEG at the same quality."""
    img = astronaut[100:228, 100:228]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=75)
    real = np.asarray(Image.open(buf)).astype(np.float32) / 255
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ours = diff_jpeg(x, 75.0)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - real).mean() < 0.02
    assert np.abs(ours - img / 255).mean() > 0.002  # it does compress


@pytest.mark.parametrize(
    "x, q",
    [
        (torch.rand(3, 8, 8), 75.0),  # no batch axis
        (torch.rand(1, 1, 8, 8), 75.0),  # one channel
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 75.0),  # integers
        (torch.rand(1, 3, 8, 8), 0.0),  # quality out of range
        (torch.rand(2, 3, 8, 8), torch.tensor([50.0, 60.0, 70.0])),  # wrong count
    ],
)
def test_bad_input(x, q):
    with pytest.raises(InputError):
        diff_jpeg(x, q)
    with pytest.raises(InputError):
        DiffJPEG(101)
