"""zstd frames for tests, from whichever binding mitmproxy's version brings."""

from __future__ import annotations

try:
    import zstandard
except ImportError:
    zstandard = None
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef]


def zstd_compress(data: bytes, window_log: int | None = None) -> bytes:
    """One frame; with `window_log`, a frame that declares that window and no content size."""
    if zstandard is not None:
        if window_log is None:
            return zstandard.ZstdCompressor().compress(data)
        params = zstandard.ZstdCompressionParameters(window_log=window_log, write_content_size=False)
        compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
        return compressor.compress(data) + compressor.flush()
    if window_log is None:
        return zstd.compress(data)
    options = {zstd.CompressionParameter.window_log: window_log, zstd.CompressionParameter.content_size_flag: 0}
    compressor = zstd.ZstdCompressor(options=options)
    return compressor.compress(data) + compressor.flush()
