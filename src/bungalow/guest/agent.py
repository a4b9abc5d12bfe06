"""Entry point of the bungalow guest agent: ``python3 agent.py [--init] ...``.

Kept to a few lines on purpose: Python never caches the bytecode of the
script it runs, but it does cache (or load precompiled) the modules that
script imports, and under TCG compiling the server costs real boot time.
All the agent's files sit side by side (``/run/bungalow/`` in the guest);
see agent_server.py for what the agent does.
"""

import os
import sys

if __package__:  # imported as bungalow.guest.agent on the host
    from .agent_server import main
else:  # run as a script, perhaps with -I, which leaves its directory off sys.path
    _here = os.path.dirname(os.path.abspath(__file__))
    if _here not in sys.path:
        sys.path.insert(0, _here)
    from agent_server import main  # type: ignore[no-redef]

if __name__ == "__main__":
    sys.exit(main())
