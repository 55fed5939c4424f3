"""The Faust app of the ``VELOX_*`` settings: ``faust -A velox.streams.faust_app worker -l info --loop uvloop``.

To run agents of your own beside Velox's, import this ``app`` in your module, decorate them
with ``@app.agent(...)`` and start ``faust -A yourmodule worker`` (README, "Two stream engines").
Importing it makes the topics the worker needs, as ``velox worker`` does before it starts.
"""

from velox.settings import Settings
from velox.streams.faust_engine import create_app
from velox.streams.startup import prepare

settings = Settings.from_env()
prepare(settings)
app = create_app(settings)
