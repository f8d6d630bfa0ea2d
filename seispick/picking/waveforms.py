"""The one input path: waveform bytes or files to an ObsPy Stream, with the format named, never guessed per call.

``read_waveform_bytes`` is used by the CLI (through ``read_waveform_file``/``read_waveforms``), the HTTP API
(request bodies and multipart parts) and the file ingest of the stream:

1. gzip, bzip2 and xz are recognised by their magic bytes and unpacked (bounded by ``max_bytes`` and a
   number of members; linear in the input);
2. the format is sniffed: miniSEED 3 by its header, then ObsPy's own format checks in ObsPy's order
   (miniSEED 2, SAC, then the other waveform formats it reads) except PICKLE (unpickling runs code) and CSS,
   NNSA_KB_CORE and Q (they open further files named inside the data);
3. miniSEED (2 and 3) is read by libmseed through pymseed alone: every record header is checked first, and a
   record libmseed refuses, a cut record or an impossible header refuses the whole input, naming the record
   (no second reader that would trust a corrupt header); the other formats go through ``obspy.read`` with the
   format named. Traces whose times or rates cannot be real are refused (``check_traces``).

``InputLimits`` bounds the work of a request before it is done: samples (from record headers before decoding),
segments, windows (checked by ``annotate.prepare``) and compressed members; over one, ``LimitExceededError``
names the setting.

Bytes that are none of these raise ``WaveformFormatError`` whose message says what they look like
(StationXML, QuakeML, an HTML page, JSON, text, gzip of something unreadable, an archive, empty...).
"""

from __future__ import annotations

import bz2
import io
import lzma
import math
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import obspy
import pymseed
from obspy.core.util.base import ENTRY_POINTS, buffered_load_entry_point

from seispick.miniseed.constants import NS_PER_S
from seispick.miniseed.decode import (
    EARLIEST_NS,
    EARLIEST_YEAR,
    LATEST_NS,
    LATEST_YEAR,
    SampleTally,
    first_undecodable,
    has_samples,
    is_record_header,
    scan_records,
    segment_trace,
)

# Formats never sniffed: PICKLE unpickles (runs code); these three open other files named in the data.
EXCLUDED_FORMATS = frozenset({"PICKLE", "CSS", "NNSA_KB_CORE", "Q"})
ACCEPTED_DESCRIPTION = (
    "miniSEED, SAC or another waveform format ObsPy reads, plain or gzip/bzip2/xz-compressed"
)
FORMAT_LABELS = {"MSEED": "miniSEED", "MSEED3": "miniSEED 3", "SACXY": "alphanumeric SAC"}
MSEED_FORMATS = frozenset({"MSEED", "MSEED3"})  # read by libmseed; ObsPy's check knows miniSEED 2 only
_COMPRESSIONS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_CHUNK = 1 << 20
_FIRST_FEED = 1 << 10  # input fed to a new member; doubled up to _CHUNK while the member goes on
DEFAULT_MAX_MEMBERS = 10_000  # gzip/bzip2/xz members in one body or file (SEISPICK_MAX_COMPRESSED_MEMBERS)


class WaveformReadError(ValueError):
    """None of the given paths held readable waveforms."""


class WaveformFormatError(ValueError):
    """Bytes that are not a waveform format seispick reads; the message says what they look like.

    ``kind`` is a short label (``empty``, ``not_waveform``, ``corrupt``, ``too_large``) for error metrics.
    """

    def __init__(self, message: str, kind: str = "not_waveform") -> None:
        super().__init__(message)
        self.kind = kind


class LimitExceededError(WaveformFormatError):
    """Input over one of its resource limits (see ``InputLimits``); ``limit`` is the field's name."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message, "too_large")
        self.limit = limit


@dataclass(frozen=True)
class InputLimits:
    """Resource bounds of one request (or read), each checked before the work it bounds; None: unbounded.

    ``max_samples``: samples decoded, from the record headers before decoding (miniSEED, SAC), counted on from
    ``samples_before`` (earlier parts of the request); ``max_segments``: gap-free stretches (traces as read,
    segments as grouped); ``max_windows``: model windows; ``max_compressed_members``: gzip/bzip2/xz members.
    A refusal names the setting of the service that sets the limit (``SEISPICK_MAX_SAMPLES``).
    """

    max_samples: int | None = None
    max_segments: int | None = None
    max_windows: int | None = None
    max_compressed_members: int | None = DEFAULT_MAX_MEMBERS
    samples_before: int = 0

    def check(self, limit: str, amount: int, what: str) -> None:
        """``LimitExceededError`` when ``amount`` (of ``what``: ``samples in the body``) passes ``limit``."""
        maximum = getattr(self, limit)
        if maximum is not None and amount > maximum:
            raise LimitExceededError(
                f"{amount:,} {what}, over the limit of {maximum:,} (setting SEISPICK_{limit.upper()})", limit
            )


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


def decompress(
    data: bytes,
    compression: str,
    max_bytes: int | None = None,
    max_members: int | None = DEFAULT_MAX_MEMBERS,
    inspect: Callable[[bytes], None] | None = None,
) -> bytes:
    """Unpack ``data`` (concatenated members too); ValueError when corrupt or cut short.

    Linear in the size of ``data``: each member reads the input through a view from its own offset, fed in
    growing slices, so neither the members nor what follows them are copied per member. ``LimitExceededError``
    after more than ``max_members`` members; ``WaveformFormatError`` (kind ``too_large``) as soon as the output
    passes ``max_bytes``. ``inspect`` sees each piece of output as it comes (and may raise to stop).
    """
    out: list[bytes] = []
    size = 0
    try:
        for piece in _unpacked_pieces(data, compression, max_members):
            size += len(piece)
            if max_bytes is not None and size > max_bytes:
                raise WaveformFormatError(
                    f"{compression} data that unpack to more than {max_bytes} bytes", "too_large"
                )
            if inspect is not None:
                inspect(piece)
            out.append(piece)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ValueError(f"{compression} data that do not unpack ({exc})") from None
    return b"".join(out)


def _unpacked_pieces(data: bytes, compression: str, max_members: int | None) -> Iterator[bytes]:
    """The output of every member of ``data``, ``_CHUNK`` bytes at most at a time."""
    view = memoryview(data).cast("B")
    offset, members = 0, 0
    while offset < len(view):
        members += 1
        if max_members is not None and members > max_members:
            raise LimitExceededError(
                f"{compression} data of more than {max_members:,} members, over the limit of "
                f"{max_members:,} (setting SEISPICK_MAX_COMPRESSED_MEMBERS)",
                "max_compressed_members",
            )
        decompressor = _DECOMPRESSORS[compression]()
        feed = _FIRST_FEED
        while not decompressor.eof:
            if offset >= len(view):
                raise EOFError("the data end before the compressed stream does")
            chunk = view[offset : offset + feed]
            offset += len(chunk)
            feed = min(2 * feed, _CHUNK)
            yield from _member_pieces(decompressor, chunk)
        offset -= len(decompressor.unused_data)  # the bytes of this slice after the member
        if compression_of(view[offset : offset + 8].tobytes()) != compression:
            break  # trailing bytes after the last member are ignored, as gzip -d does


def _member_pieces(decompressor, chunk: memoryview | bytes) -> Iterator[bytes]:
    """What ``decompressor`` unpacks from ``chunk``, ``_CHUNK`` bytes at most at a time, until it needs more
    input or its member ends."""
    if not hasattr(decompressor, "needs_input"):  # zlib
        while True:
            piece = decompressor.decompress(chunk, _CHUNK)
            if piece:
                yield piece
            if decompressor.eof:
                return
            chunk = decompressor.unconsumed_tail
            if not chunk and len(piece) < _CHUNK:
                return  # all input taken and no output pending
    else:
        piece = decompressor.decompress(chunk, max_length=_CHUNK)
        while True:
            if piece:
                yield piece
            if decompressor.eof or decompressor.needs_input:
                return
            piece = decompressor.decompress(b"", max_length=_CHUNK)


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
    if data[:3] == b"MS\x03" and is_record_header(data):
        return "MSEED3"
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
    try:
        return next(_unpacked_pieces(data, compression, max_members=None), b"")
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return b""


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


def read_waveform_bytes(
    data: bytes, name: str = "the data", max_bytes: int | None = None, limits: InputLimits | None = None
) -> obspy.Stream:
    """Read waveform bytes (see the module docstring); ``name`` starts every error message.

    ``max_bytes`` bounds what compressed data may unpack to, ``limits`` the work (``InputLimits``).
    Raises ``WaveformFormatError`` (``LimitExceededError`` over a limit).
    """
    stream, _ = read_waveform_bytes_with_format(data, name, max_bytes, limits=limits)
    return stream


def read_waveform_bytes_with_format(
    data: bytes,
    name: str = "the data",
    max_bytes: int | None = None,
    is_file: bool = False,
    limits: InputLimits | None = None,
) -> tuple[obspy.Stream, str]:
    """As ``read_waveform_bytes``, and the format read (``MSEED``, ``SAC (gzip)``...).

    ``is_file`` words the messages for a file named ``name`` (``<path>: not a miniSEED or SAC file ...``).
    """
    limits = limits or InputLimits()
    if not data:
        raise WaveformFormatError(f"{name} is empty", "empty")
    compression = compression_of(data)
    payload = data
    if compression:
        try:
            payload = decompress(data, compression, max_bytes, limits.max_compressed_members, _tally(limits))
        except WaveformFormatError as exc:
            raise _renamed(exc, f"{name} holds {exc}") from None
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
    label = FORMAT_LABELS.get(fmt, fmt) + (f" ({compression}-compressed)" if compression else "")
    try:
        if fmt in MSEED_FORMATS:
            stream = read_mseed_libmseed(payload, limits)
        else:
            stream = _read_other(payload, fmt, limits)
        check_traces(stream)
    except WaveformFormatError as exc:
        if isinstance(exc, LimitExceededError):
            raise _renamed(exc, f"{name} holds {exc}") from None
        raise _renamed(exc, f"{name} is not valid {label}: {exc}") from None
    if len(stream) == 0:
        raise WaveformFormatError(f"{name} holds no {FORMAT_LABELS.get(fmt, fmt)} waveform records", "empty")
    return stream, fmt + (f" ({compression})" if compression else "")


def _tally(limits: InputLimits) -> Callable[[bytes], None] | None:
    """Checks ``limits.max_samples`` against the samples miniSEED records declare while they are unpacked, so
    that a small compressed body declaring billions of samples is refused before it is all unpacked."""
    if limits.max_samples is None:
        return None
    tally = SampleTally()

    def inspect(piece: bytes) -> None:
        declared = limits.samples_before + tally.feed(piece)
        limits.check(
            "max_samples", declared, "samples declared by the record headers (counted while unpacking)"
        )

    return inspect


def _renamed(exc: WaveformFormatError, message: str) -> WaveformFormatError:
    """``exc`` (its class, kind and limit) with ``message``."""
    if isinstance(exc, LimitExceededError):
        return LimitExceededError(message, exc.limit)
    return WaveformFormatError(message, exc.kind)


def _read_other(payload: bytes, fmt: str, limits: InputLimits) -> obspy.Stream:
    """A format other than miniSEED through ObsPy's reader; SAC's sample count is checked from its header."""
    if fmt == "SAC":
        limits.check("max_samples", limits.samples_before + _sac_npts(payload), "samples in the SAC header")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stream = obspy.read(io.BytesIO(payload), format=fmt)
    except Exception as exc:  # noqa: BLE001 - ObsPy's readers raise many types for corrupt input
        raise WaveformFormatError(_reason(exc), "corrupt") from None
    limits.check("max_samples", limits.samples_before + sum(tr.stats.npts for tr in stream), "samples")
    limits.check("max_segments", len(stream), "traces")
    return stream


def _sac_npts(payload: bytes) -> int:
    """The sample count of a binary SAC header (either byte order: the one whose version is 6)."""
    if len(payload) < 632:
        return 0
    for order in "<>":
        if struct.unpack_from(order + "i", payload, 304)[0] == 6:
            return max(struct.unpack_from(order + "i", payload, 316)[0], 0)
    return 0


def check_traces(stream: obspy.Stream) -> None:
    """Refuse traces whose start or end lies outside the years ``EARLIEST_YEAR``..``LATEST_YEAR`` or whose
    sampling rate is not a finite number (a header that cannot be real: SAC's b, e or delta, miniSEED times)."""
    for trace in stream:
        stats = trace.stats
        rate = float(stats.sampling_rate)
        if not math.isfinite(rate) or rate < 0:
            raise WaveformFormatError(
                f"trace {trace.id}: sampling rate {rate:g} (header field delta)", "header"
            )
        start = int(stats.starttime.ns)
        end = start + (stats.npts / rate * NS_PER_S if rate > 0 else 0)
        if not (EARLIEST_NS <= start < LATEST_NS and end < LATEST_NS):
            raise WaveformFormatError(
                f"trace {trace.id}: its time span (start {_year_of(start)}, {stats.npts} samples at {rate:g} Hz) "
                f"lies outside the years {EARLIEST_YEAR}-{LATEST_YEAR} (header fields of the start time: "
                "miniSEED year/day, SAC nzyear/nzjday and b; delta, npts)",
                "header",
            )


def _year_of(ns: int) -> str:
    """The year of an epoch time in ns, for a message (also far outside what ObsPy can print)."""
    return f"year {1970 + ns / (365.2425 * 86400 * NS_PER_S):.0f}"


def read_mseed_libmseed(data: bytes, limits: InputLimits | None = None) -> obspy.Stream:
    """miniSEED (2 or 3) bytes to a Stream through libmseed: one Trace per contiguous segment of each
    channel, samples as libmseed decodes them (int32, float32 or float64); text records are left out.

    Every record header is checked first (``seispick.miniseed.decode.scan_records``): a record libmseed refuses,
    a cut record or an impossible header refuses the whole buffer (``WaveformFormatError`` naming the record),
    and ``limits.max_samples`` is checked against the samples the headers declare, before any is decoded.
    Each Trace is built as the real-time sources build theirs (``seispick.miniseed.decode.segment_trace``)."""
    limits = limits or InputLimits()
    scan = scan_records(data)
    problem = scan.problem()
    if problem is not None:
        prefix = "no complete record could be decoded: " if not scan.records else ""
        raise WaveformFormatError(prefix + problem, "corrupt")
    limits.check(
        "max_samples", limits.samples_before + scan.samples, "samples declared by the record headers"
    )
    stream = obspy.Stream()
    try:
        records = memoryview(data)[: scan.end]  # without zero padding
        traces = pymseed.MS3TraceList.from_buffer(records, unpack_data=True, validate_crc=True)
        segments = [(trace_id, seg) for trace_id in traces for seg in trace_id if has_samples(seg)]
        limits.check("max_segments", len(segments), "contiguous segments in the records")
        for trace_id, segment in segments:
            stream.append(segment_trace(pymseed.sourceid2nslc(trace_id.sourceid), segment))
    except WaveformFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - data that libmseed does not decode (headers were fine)
        culprit = first_undecodable(memoryview(data)[: scan.end])
        reason = culprit or f"the samples of a record do not decode ({_reason(exc)})"
        raise WaveformFormatError(reason, "corrupt") from None
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
