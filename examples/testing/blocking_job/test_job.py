"""The blocking job against the emulator: a plain synchronous test."""

from job import render


def test_render_saves_every_image(fake_dashscope_env, tmp_path):
    """Each prompt gives one PNG; a failure is counted, not raised."""
    failed = render(["a red fox", "a lighthouse", ""], tmp_path)
    assert 1 == failed  # the empty prompt is refused before anything is ordered
    assert 2 == len(list(tmp_path.glob("*.png")))
