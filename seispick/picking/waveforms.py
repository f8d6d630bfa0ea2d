"""The one input path: waveform bytes or files to an ObsPy Stream, with the format named, never guessed per call.

``read_waveform_bytes`` is used by the CLI (through ``read_waveform_file``/``read_waveforms``), the HTTP API
(request bodies and multipart parts) and the file ingest of the stream:

1. gzip, bzip2 and xz are recognised by their magic bytes and unpacked (bounded by ``max_bytes``);
2. the format is sniffed with ObsPy's own format checks, in ObsPy's order (miniSEED, SAC, then the other
   waveform formats it reads) except PICKLE (unpickling runs code) and CSS, NNSA_KB_CORE and Q (they open
   further files named inside the data);
3. ``obspy.read`` is called with that format named; miniSEED is decoded by libmseed through pymseed
   straight into traces (about 9x cheaper than ObsPy's reader on a 60 s request body), with ObsPy's reader
   as the fallback that words the error for records libmseed refuses.

Bytes that are none of these raise ``WaveformFormatError`` whose message says what they look like
(StationXML, QuakeML, an HTML page, JSON, text, gzip of something unreadable, an archive, empty...).
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import obspy
import pymseed
from obspy.core.util.base import ENTRY_POINTS, buffered_load_entry_point

from seispick.miniseed.decode import has_samples, segment_trace

# Formats never sniffed: PICKLE unpickles (runs code); these three open other files named in the data.
EXCLUDED_FORMATS = frozenset({"PICKLE", "CSS", "NNSA_KB_CORE", "Q"})
ACCEPTED_DESCRIPTION = (
    "miniSEED, SAC or another waveform format ObsPy reads, plain or gzip/bzip2/xz-compressed"
)
FORMAT_LABELS = {"MSEED": "miniSEED", "SACXY": "alphanumeric SAC"}
_COMPRESSIONS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_CHUNK = 1 << 20


class WaveformReadError(ValueError):
    """None of the given paths held readable waveforms."""


class WaveformFormatError(ValueError):
    """Bytes that are not a waveform format seispick reads; the message says what they look like.

    ``kind`` is a short label (``empty``, ``not_waveform``, ``corrupt``, ``too_large``) for error metrics.
    """

    def __init__(self, message: str, kind: str = "not_waveform") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ReadResult:
    """The stream read, the files it came from and the files refused with their reasons."""

    stream: obspy.Stream
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    formats: dict[Path, str] = field(default_factory=dict)  # file -> e.g. "MSEED", "SAC (gzip)"


# -- sniffing -----------------------------------------------------------------------------------------------


def compression_of(data: bytes) -> str | None:
    """``gzip``, ``bzip2`` or ``xz`` from the magic bytes, else None."""
    return next((name for magic, name in _COMPRESSIONS if data.startswith(magic)), None)


def decompress(data: bytes, compression: str, max_bytes: int | None = None) -> bytes:
    """Unpack ``data`` (concatenated members too); ValueError when corrupt or cut short.

    ``WaveformFormatError`` (kind ``too_large``) as soon as the output passes ``max_bytes``.
    """
    out: list[bytes] = []
    size, rest = 0, data
    try:
        while rest:
            decompressor = _DECOMPRESSORS[compression]()
            for piece in _member_pieces(decompressor, rest):
                size += len(piece)
                if max_bytes is not None and size > max_bytes:
                    raise WaveformFormatError(
                        f"{compression} data that unpack to more than {max_bytes} bytes", "too_large"
                    )
                out.append(piece)
            rest = decompressor.unused_data
            if compression_of(rest) != compression:
                break  # trailing bytes after the last member are ignored, as gzip -d does
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ValueError(f"{compression} data that do not unpack ({exc})") from None
    return b"".join(out)


def _member_pieces(decompressor, data: bytes) -> Iterator[bytes]:
    """Output of one compressed member, ``_CHUNK`` bytes at most at a time."""
    is_zlib = not hasattr(decompressor, "needs_input")
    chunk = data
    while not decompressor.eof:
        if is_zlib:
            yield decompressor.decompress(chunk, _CHUNK)
            chunk = decompressor.unconsumed_tail
            starved = not chunk
        else:
            yield decompressor.decompress(chunk, max_length=_CHUNK)
            chunk = b""
            starved = decompressor.needs_input
        if starved and not decompressor.eof:
            raise EOFError("the data end before the compressed stream does")


_DECOMPRESSORS: dict[str, Callable] = {
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "bzip2": bz2.BZ2Decompressor,
    "xz": lzma.LZMADecompressor,
}


_SAFE_CHECKS = frozenset({"MSEED", "SAC"})  # pure-Python header checks; the others get a private copy
_CHECKS: dict[str, Callable | None] = {}


def _format_check(name: str) -> Callable | None:
    """ObsPy's isFormat function of ``name``, loaded once (None when its plugin does not load)."""
    if name not in _CHECKS:
        entry = ENTRY_POINTS["waveform"][name]
        dist = entry.dist.name if getattr(entry, "dist", None) else "obspy"
        try:
            _CHECKS[name] = buffered_load_entry_point(dist, f"obspy.plugin.waveform.{name}", "isFormat")
        except Exception:  # noqa: BLE001 - a broken third-party plugin is skipped, not fatal
            _CHECKS[name] = None
    return _CHECKS[name]


def sniff_format(data: bytes) -> str | None:
    """The ObsPy format name of uncompressed ``data`` (``MSEED``, ``SAC``, ...), or None.

    ObsPy's format checks in ObsPy's order, loaded as needed. Checks other than miniSEED's and SAC's get a
    copy of the bytes: GCF's C reader byte-swaps the buffer it is given in place.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ENTRY_POINTS["waveform"]:
            check = None if name in EXCLUDED_FORMATS else _format_check(name)
            if check is None:
                continue
            try:
                if check(io.BytesIO(data if name in _SAFE_CHECKS else bytearray(data))):
                    return name
            except Exception:  # noqa: BLE001 - format checks raise anything on foreign bytes
                continue
    return None


_XML_ROOT = re.compile(rb"<\s*([A-Za-z_][\w.:-]*)")


def describe_bytes(data: bytes) -> str:
    """What ``data`` look like, for a message: ``miniSEED``, ``an HTML page``, ``StationXML ...``, ``plain text ...``.

    Compressed data are described by what the first MiB unpacks to.
    """
    if not data:
        return "empty"
    compression = compression_of(data)
    if compression:
        try:
            inner = decompress(data, compression, max_bytes=1 << 20)
        except WaveformFormatError:  # larger: describe the start
            inner = _decompress_head(data, compression)
        except ValueError:
            return f"{compression} data that do not unpack (corrupt or cut short)"
        return f"{compression}-compressed {describe_bytes(inner)}"
    fmt = sniff_format(data)
    if fmt is not None:
        return FORMAT_LABELS.get(fmt, fmt)
    head = data[:4096]
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (unpack it and give the waveform files inside)"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "a tar archive (unpack it and give the waveform files inside)"
    for magic, name in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF")):
        if head.startswith(magic):
            return name
    if re.match(rb"\d{6}V", head):
        return "dataless SEED (station metadata without waveforms)"
    text = _as_text(head)
    if text is None:
        return f"binary data beginning {head[:8].hex(' ')}"
    stripped = text.lstrip("\ufeff \t\r\n").lower()
    if stripped.startswith("<"):
        return _describe_markup(stripped, head)
    if stripped[:1] in "{[":
        return "JSON (send JSON samples as application/json)"
    if stripped.startswith("network|") or stripped.startswith("#network|"):
        return "FDSN station text (station metadata, not waveforms)"
    snippet = " ".join(text.split())[:40]
    return f"plain text beginning {snippet!r}" if snippet else "whitespace only"


def _decompress_head(data: bytes, compression: str) -> bytes:
    decompressor = _DECOMPRESSORS[compression]()
    return next(_member_pieces(decompressor, data), b"")


def _describe_markup(lower: str, head: bytes) -> str:
    if lower.startswith("<!doctype html") or "<html" in lower[:1024]:
        title = re.search(r"<title[^>]*>([^<]{1,80})", lower)
        return "an HTML page" + (f" (title {title.group(1).strip()!r})" if title else "")
    if "fdsnstationxml" in lower:
        return "StationXML (station metadata, not waveforms)"
    if "quakeml" in lower:
        return "QuakeML (events and picks, not waveforms)"
    if "seiscomp" in lower:
        return "SeisComP XML (inventory or events, not waveforms)"
    roots = [m.group(1).decode("ascii", "replace") for m in _XML_ROOT.finditer(head)]
    root = next((r for r in roots if not r.startswith(("?", "!"))), None)
    return "XML" + (f" (root element <{root}>)" if root else "")


def _as_text(head: bytes) -> str | None:
    """``head`` as text when it is (nearly) all printable UTF-8/Latin-1, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end
            return None
        text = head[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


# -- reading ------------------------------------------------------------------------------------------------


def read_waveform_bytes(data: bytes, name: str = "the data", max_bytes: int | None = None) -> obspy.Stream:
    """Read waveform bytes (see the module docstring); ``name`` starts every error message.

    ``max_bytes`` bounds what compressed data may unpack to. Raises ``WaveformFormatError``.
    """
    stream, _ = read_waveform_bytes_with_format(data, name, max_bytes)
    return stream


def read_waveform_bytes_with_format(
    data: bytes, name: str = "the data", max_bytes: int | None = None, is_file: bool = False
) -> tuple[obspy.Stream, str]:
    """As ``read_waveform_bytes``, and the format read (``MSEED``, ``SAC (gzip)``...).

    ``is_file`` words the messages for a file named ``name`` (``<path>: not a miniSEED or SAC file ...``).
    """
    if not data:
        raise WaveformFormatError(f"{name} is empty", "empty")
    compression = compression_of(data)
    payload = data
    if compression:
        try:
            payload = decompress(data, compression, max_bytes)
        except WaveformFormatError as exc:
            raise WaveformFormatError(f"{name} holds {exc}", exc.kind) from None
        except ValueError as exc:
            raise WaveformFormatError(f"{name} holds {exc}", "corrupt") from None
        if not payload:
            raise WaveformFormatError(f"{name} holds {compression} data that unpack to nothing", "empty")
    fmt = sniff_format(payload)
    if fmt is None:
        what = f"{name}: not a miniSEED or SAC file" if is_file else f"{name} is not valid miniSEED or SAC"
        raise WaveformFormatError(
            f"{what} (nor another waveform format ObsPy reads): it looks like {describe_bytes(data)}; "
            f"accepted: {ACCEPTED_DESCRIPTION}"
        )
    label = FORMAT_LABELS.get(fmt, fmt)
    try:
        stream = read_mseed_libmseed(payload) if fmt == "MSEED" else None
    except Exception:  # noqa: BLE001 - ObsPy's reader below says what is wrong
        stream = None
    if stream is not None and len(stream) == 0:
        stream = None  # nothing libmseed could use: ObsPy's reader words why
    try:
        if stream is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stream = obspy.read(io.BytesIO(payload), format=fmt)
    except Exception as exc:  # noqa: BLE001 - ObsPy's readers raise many types for corrupt input
        reason = _reason(exc)
        packed = f" ({compression}-compressed)" if compression else ""
        raise WaveformFormatError(f"{name} is not valid {label}{packed}: {reason}", "corrupt") from None
    if len(stream) == 0:
        raise WaveformFormatError(f"{name} holds no {label} waveform records", "empty")
    return stream, fmt + (f" ({compression})" if compression else "")


def read_mseed_libmseed(data: bytes) -> obspy.Stream:
    """miniSEED (2 or 3) bytes to a Stream through libmseed: one Trace per contiguous segment of each
    channel, samples as libmseed decodes them (int32, float32 or float64); text records are left out.

    Each Trace is built as the real-time sources build theirs (``seispick.miniseed.decode.segment_trace``)."""
    stream = obspy.Stream()
    try:
        traces = pymseed.MS3TraceList.from_buffer(data, unpack_data=True)
        for trace_id in traces:
            nslc = pymseed.sourceid2nslc(trace_id.sourceid)
            stream.extend([segment_trace(nslc, segment) for segment in trace_id if has_samples(segment)])
    finally:
        pymseed.clear_error_messages()
    return stream


def _reason(exc: Exception) -> str:
    """The first line of a reader's error, without ObsPy's "Cannot open file <BytesIO...>"."""
    text = str(exc).strip()
    if not text or "BytesIO" in text:
        return "no complete record could be decoded (cut short or corrupt)"
    return text.splitlines()[0][:200]


def read_waveform_file(path: Path, max_bytes: int | None = None) -> obspy.Stream:
    """Read one waveform file; raise ``WaveformFormatError`` (a ValueError) whose message names the file."""
    return _read_file(path, max_bytes)[0]


def _read_file(path: Path, max_bytes: int | None = None) -> tuple[obspy.Stream, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WaveformFormatError(f"{path}: cannot be read ({exc.strerror or exc})", "unreadable") from None
    if not data:
        raise WaveformFormatError(f"{path}: empty file", "empty")
    return read_waveform_bytes_with_format(data, str(path), max_bytes, is_file=True)


def expand_paths(paths: list[str | Path]) -> tuple[list[tuple[Path, bool]], list[str]]:
    """(file, named directly) for files named and every file below named folders (sorted, hidden skipped)."""
    files, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not found:
                problems.append(f"{path}: folder holds no files")
            files.extend((p, False) for p in found)
        elif path.is_file():
            files.append((path, True))
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def read_waveforms(paths: list[str | Path]) -> ReadResult:
    """Read every file below ``paths``; raise WaveformReadError if nothing could be read."""
    files, problems = expand_paths(paths)
    result = ReadResult(stream=obspy.Stream(), problems=problems)
    skipped: list[Path] = []  # files found in folders that are not waveforms (READMEs, CSVs, ...)
    for path, named in files:
        try:
            stream, fmt = _read_file(path)
        except ValueError as exc:
            if named:
                result.problems.append(str(exc))
            else:
                skipped.append(path)
            continue
        result.stream += stream
        result.files.append(path)
        result.formats[path] = fmt
    if skipped:
        examples = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        result.problems.append(
            f"skipped {len(skipped)} file(s) in folders that are not waveforms ({examples})"
        )
    if not result.files:
        reasons = "\n  ".join(result.problems) or "no paths given"
        raise WaveformReadError(f"no readable waveform files:\n  {reasons}")
    return result
