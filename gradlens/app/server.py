"""`serve`: the app's Streamlit server, run in this process (what `gradlens app` does)."""
from pathlib import Path

MAIN = Path(__file__).with_name("main.py")


# The app is served to be used, not edited: no file watcher (Streamlit's module watcher examines every imported
# module, and lazy ones such as haiku.experimental.flax log an ImportError traceback per rerun; `streamlit run
# app/streamlit_app.py` keeps the watcher for whoever develops the app), the viewer's toolbar (no Deploy button), and
# nothing fetched from the internet (Streamlit bundles its fonts and icons; usage statistics off).
OPTIONS = {"server.headless": "true", "server.fileWatcherType": "none", "server.runOnSave": "false",
           "client.toolbarMode": "viewer", "browser.gatherUsageStats": "false"}


def command(runs, port: int, address: str = "127.0.0.1") -> list[str]:
    """The `streamlit` arguments that serve the app on `address`:`port` over the run store `runs`."""
    options = [arg for name, value in {"server.address": address, "server.port": str(port), **OPTIONS}.items()
               for arg in (f"--{name}", value)]
    return ["run", str(MAIN), *options, "--", "--runs", str(runs)]


def serve(runs, port: int = 8501, address: str = "127.0.0.1") -> None:
    """Serve the app over the run store `runs` on `address`:`port` (default: this machine only) until interrupted.
    ValueError for a port outside 1..65535 or a run store that is a file."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer between 1 and 65535, got {port!r}")
    if Path(runs).exists() and not Path(runs).is_dir():
        raise ValueError(f"run store {runs} is a file, not a folder")
    # the pages' heavy imports (JAX, plotly, pandas, networkx) now rather than on the first visit: a fast first paint
    from gradlens import report  # noqa: F401
    from gradlens.analysis import paths  # noqa: F401
    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(command(runs, port, address), prog_name="streamlit", standalone_mode=False)
