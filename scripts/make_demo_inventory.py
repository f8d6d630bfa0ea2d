"""Write the demo's StationXML (seispick/service/stream/demo/stations.xml): EV01-EV09 with a nominal response.

The demo's event recordings (scripts/make_demo_data.py) are real NCEDC seismograms, but each was rescaled to a
peak of 4000 * min(10 km / hypocentral distance, 1) counts when it was placed, and the PhaseNet dataset they
come from keeps neither the original channels' gains nor their start times. No real response can describe
these counts, so every channel gets the same documented, nominal response of a typical velocity broadband
station:

* sensor: 1500 V/(m/s), flat in velocity above its 120 s corner (two poles at -0.03702 +- 0.03702j rad/s,
  damping 0.707, two zeros at 0; normalised to 1 at 1 Hz), like an STS-2 class seismometer;
* digitiser: 419,430 counts/V (a 24-bit recorder of 20 V peak to peak), no decimation filters listed;
* overall: 6.29e8 counts/(m/s) at 1 Hz.

Magnitudes computed with it (``seispick associate --waveforms``, the service's live ML) are therefore nominal:
about ML 1 to 2 for the demo event, a property of the rescaling, not of the original earthquakes.

Coordinates are those of ``stations.csv`` (read back with seispick's own reader), channels HHZ/HHN/HHE at
100 Hz, location code empty, open epochs from 2000-01-01 (``--demo`` re-stamps the archive to the present).
Run by hand after scripts/make_demo_data.py (which calls it).
"""

from __future__ import annotations

import math
from pathlib import Path

from obspy import UTCDateTime
from obspy.core.inventory import (
    Channel,
    CoefficientsTypeResponseStage,
    InstrumentSensitivity,
    Inventory,
    Network,
    PolesZerosResponseStage,
    Response,
    Station,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "seispick" / "service" / "stream" / "demo"
SENSOR_V_PER_M_S = 1500.0
DIGITISER_COUNTS_PER_V = 419_430.0
CORNER_S, DAMPING = 120.0, 0.707
START = UTCDateTime(2000, 1, 1)
# (component, azimuth, dip)
ORIENTATIONS = (("Z", 0.0, -90.0), ("N", 0.0, 0.0), ("E", 90.0, 0.0))


def nominal_response() -> Response:
    """The documented two-stage response (sensor in V/(m/s), digitiser in counts/V) of every demo channel."""
    w0 = 2 * math.pi / CORNER_S
    pole = complex(-DAMPING * w0, w0 * math.sqrt(1 - DAMPING**2))
    poles, zeros = [pole, pole.conjugate()], [0j, 0j]
    s = 2j * math.pi * 1.0
    value = (s - zeros[0]) * (s - zeros[1]) / ((s - poles[0]) * (s - poles[1]))
    sensor = PolesZerosResponseStage(
        stage_sequence_number=1,
        stage_gain=SENSOR_V_PER_M_S,
        stage_gain_frequency=1.0,
        input_units="M/S",
        output_units="V",
        pz_transfer_function_type="LAPLACE (RADIANS/SECOND)",
        normalization_frequency=1.0,
        normalization_factor=1.0 / abs(value),
        zeros=zeros,
        poles=poles,
        input_units_description="Velocity in meters per second",
        output_units_description="Volts",
        description="nominal broadband sensor (120 s, 1500 V/(m/s))",
    )
    digitiser = CoefficientsTypeResponseStage(
        stage_sequence_number=2,
        stage_gain=DIGITISER_COUNTS_PER_V,
        stage_gain_frequency=1.0,
        input_units="V",
        output_units="COUNTS",
        cf_transfer_function_type="DIGITAL",
        numerator=[1.0],
        denominator=[],
        decimation_input_sample_rate=100.0,
        decimation_factor=1,
        decimation_offset=0,
        decimation_delay=0.0,
        decimation_correction=0.0,
        input_units_description="Volts",
        output_units_description="Digital counts",
        description="nominal 24-bit digitiser (419,430 counts/V)",
    )
    sensitivity = InstrumentSensitivity(
        value=SENSOR_V_PER_M_S * DIGITISER_COUNTS_PER_V,
        frequency=1.0,
        input_units="M/S",
        output_units="COUNTS",
    )
    return Response(instrument_sensitivity=sensitivity, response_stages=[sensor, digitiser])


def demo_inventory(csv_path: Path) -> Inventory:
    """The stations of ``csv_path`` (network,station,latitude,longitude,elevation_m) with HH? channels."""
    from seispick.events.stations import read_stations

    table = read_stations(csv_path)
    networks: dict[str, Network] = {}
    for key in sorted(table.stations):
        st = table.stations[key]
        channels = [
            Channel(
                code=f"HH{comp}",
                location_code="",
                latitude=st.latitude,
                longitude=st.longitude,
                elevation=st.elevation_m,
                depth=0.0,
                azimuth=azimuth,
                dip=dip,
                sample_rate=100.0,
                start_date=START,
                response=nominal_response(),
            )
            for comp, azimuth, dip in ORIENTATIONS
        ]
        station = Station(
            code=st.station,
            latitude=st.latitude,
            longitude=st.longitude,
            elevation=st.elevation_m,
            start_date=START,
            channels=channels,
            site=None,
        )
        networks.setdefault(st.network, Network(code=st.network, start_date=START)).stations.append(station)
    return Inventory(
        networks=list(networks.values()), source="seispick scripts/make_demo_inventory.py", created=START
    )


def main() -> None:
    inventory = demo_inventory(DEMO / "stations.csv")
    inventory.write(str(DEMO / "stations.xml"), format="STATIONXML", validate=True)


if __name__ == "__main__":
    main()
