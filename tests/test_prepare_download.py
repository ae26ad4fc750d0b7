"""img2dataset outcomes classified into failure reasons; download options checked before any work."""

from __future__ import annotations

import importlib.util

import pytest

from gill_eval.datasets.download import DownloadOptions, classify
from gill_eval.errors import ConfigError


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        ("success", None, "success"),
        ("failed_to_download", "HTTP Error 404: Not Found", "http_404"),
        ("failed_to_download", "HTTP Error 503: Service Unavailable", "http_503"),
        ("failed_to_download", "timed out", "timeout"),
        ("failed_to_download", "<urlopen error timed out>", "timeout"),
        ("failed_to_download", "The read operation timed out", "timeout"),
        ("failed_to_download", "<urlopen error [Errno 111] Connection refused>", "connection_error"),
        ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive", "disallowed_by_robots"),
        ("failed_to_resize", "Image decoding error", "decode_error"),
        ("failed_to_resize", "image area too large", "too_many_pixels"),
        ("failed_to_resize", "something new", "resize_error"),
        ("failed_to_download", "unknown url type: 'ftp'", "download_error"),
    ],
)
def test_classify(status, message, reason):
    assert classify(status, message) == reason


def test_options_are_checked():
    with pytest.raises(ConfigError, match="--resize-mode 'squash'"):
        DownloadOptions(resize_mode="squash")
    with pytest.raises(ConfigError, match="--distributor 'ray'"):
        DownloadOptions(distributor="ray")  # img2dataset's ray distributor silently does nothing without ray
    with pytest.raises(ConfigError, match="--shard-size must be at least 1"):
        DownloadOptions(shard_size=0)
    if importlib.util.find_spec("pyspark") is None:
        with pytest.raises(ConfigError, match="pyspark is not installed"):
            DownloadOptions(distributor="pyspark")
    with pytest.raises(ConfigError, match="--store 'squash'"):
        DownloadOptions(store="squash")
    assert DownloadOptions(image_size=64, store="img2dataset").content() == {
        "store": "img2dataset", "image_size": 64, "resize_mode": "border", "shard_size": 10_000}
    # the Pillow store modes ignore img2dataset's resize, so a resume is not refused over it
    assert DownloadOptions(image_size=64, store="gill-224").content() == {"store": "gill-224", "shard_size": 10_000}
    assert DownloadOptions(image_size=64, store="center-crop").content() == {
        "store": "center-crop", "image_size": 64, "shard_size": 10_000}
    assert DownloadOptions(store="auto").with_default_store("gill-224").store == "gill-224"
    assert DownloadOptions(store="center-crop").with_default_store("gill-224").store == "center-crop"
