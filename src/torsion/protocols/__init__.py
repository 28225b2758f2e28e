"""Small reusable protocols that larger ones stand on.

For now the classic services (echo, discard, chargen, daytime and time, over
TCP and UDP), which ``torsion echo`` and friends serve; framings, policies,
AMP, port forwarding and the rest follow.
"""

from torsion.protocols._classic import (
    Chargen,
    Daytime,
    Discard,
    Echo,
    Time,
    UDPChargen,
    UDPDaytime,
    UDPDiscard,
    UDPEcho,
    UDPTime,
    chargen_lines,
    daytime_text,
    rfc868_time,
)

__all__ = [
    "Chargen",
    "Daytime",
    "Discard",
    "Echo",
    "Time",
    "UDPChargen",
    "UDPDaytime",
    "UDPDiscard",
    "UDPEcho",
    "UDPTime",
    "chargen_lines",
    "daytime_text",
    "rfc868_time",
]
