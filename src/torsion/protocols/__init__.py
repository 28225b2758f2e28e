"""Small reusable protocols that larger ones stand on.

For now the echo service (RFC 862), which ``torsion echo`` serves; framings,
policies, AMP, port forwarding and the other classic services follow.
"""

from torsion.protocols._echo import Echo

__all__ = ["Echo"]
