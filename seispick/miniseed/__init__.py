"""miniSEED in and out, on libmseed (pymseed) and ObsPy; the bottom layer (``.importlinter``).

* :mod:`~seispick.miniseed.decode`: bytes to ObsPy traces: one record per call for the real-time sources
  (:func:`~seispick.miniseed.decode.decode_record`, :class:`~seispick.miniseed.decode.RecordError`, record
  lengths and headers), and the one pymseed-to-Trace construction that whole files and HTTP bodies use too
  (:func:`~seispick.miniseed.decode.segment_trace`);
* :mod:`~seispick.miniseed.pack`: traces to 512-byte miniSEED 2 records for the replay server (archive
  reading, record time shifts, INFO text records);
* :mod:`~seispick.miniseed.mseed3`: miniSEED 2 records converted to miniSEED 3;
* :mod:`~seispick.miniseed.constants`: record length, time base and sampling-rate limit, defined once.
"""
