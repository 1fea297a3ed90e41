"""The public surface: sorted, complete, shown under its public path."""

from __future__ import annotations

import importlib.metadata

import aioqwenimage
import aioqwenimage.testing


def test_all_is_sorted_and_complete():
    """__all__ is sorted and names every public attribute of the package."""
    # "@py_*" names are pytest's assertion-rewriting helpers, not ours.
    public = {name for name in dir(aioqwenimage) if not name.startswith(("_", "@"))}
    # The subpackages: `testing` is imported by this test, `redis` by the coordinator's tests.
    public -= {"testing", "redis"}
    assert sorted(aioqwenimage.__all__) == aioqwenimage.__all__
    assert public | {"__version__"} == set(aioqwenimage.__all__)


def test_the_uncertain_create_resolver_is_public():
    """resolve_uncertain's result types are exported under their public path."""
    assert {"UncertainOutcome", "UncertainResolution"} <= set(aioqwenimage.__all__)
    assert "aioqwenimage" == aioqwenimage.UncertainResolution.__module__
    assert callable(aioqwenimage.Client.resolve_uncertain)


def test_public_classes_show_their_public_path():
    """Reprs and docs show aioqwenimage.X, not the private module."""
    for name in aioqwenimage.__all__:
        obj = getattr(aioqwenimage, name)
        if isinstance(obj, type):
            assert "aioqwenimage" == obj.__module__, name
    for name in aioqwenimage.testing.__all__:
        obj = getattr(aioqwenimage.testing, name)
        if isinstance(obj, type):
            assert "aioqwenimage.testing" == obj.__module__, name


def test_version_and_pytest_entry_point_are_installed():
    """The version comes from metadata; the pytest plugin is registered for users."""
    assert importlib.metadata.version("aioqwenimage") == aioqwenimage.__version__
    entry_points = importlib.metadata.entry_points(group="pytest11")
    assert "aioqwenimage.testing._pytest_plugin" in {
        ep.value for ep in entry_points if ep.name == "aioqwenimage"
    }


def test_the_blocking_client_is_exported():
    """SyncClient and its handle are public, beside the async Client."""
    assert {"Client", "SyncClient", "SyncTaskHandle"} <= set(aioqwenimage.__all__)


def test_the_types_in_public_signatures_are_exported():
    """EventHook (Client's event_hooks) and ImageInput (edit images) have a public name."""
    assert {"EventHook", "ImageInput"} <= set(aioqwenimage.__all__)
    assert aioqwenimage.EventHook is not None
    assert aioqwenimage.ImageInput is not None
