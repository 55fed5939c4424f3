"""The Faust app of the ``VELOX_*`` settings: ``faust -A velox.streams.app worker -l info``.

To run agents of your own beside Velox's, import this ``app`` in your module, decorate them
with ``@app.agent(...)`` and start ``faust -A yourmodule worker`` (README, "Engines").
"""

from velox.settings import Settings
from velox.streams.faust_app import create_app

app = create_app(Settings.from_env())
