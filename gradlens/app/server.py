"""`serve`: the app's Streamlit server, run in this process (what `gradlens app` does)."""
from pathlib import Path

MAIN = Path(__file__).with_name("main.py")


def command(runs, port: int, address: str = "127.0.0.1") -> list[str]:
    """The `streamlit` arguments that serve the app on `address`:`port` over the run store `runs`."""
    return ["run", str(MAIN), "--server.address", address, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--", "--runs", str(runs)]


def serve(runs, port: int = 8501, address: str = "127.0.0.1") -> None:
    """Serve the app over the run store `runs` on `address`:`port` (default: this machine only) until interrupted. ValueError for a port outside 1..65535 or
    a run store that is a file."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer between 1 and 65535, got {port!r}")
    if Path(runs).exists() and not Path(runs).is_dir():
        raise ValueError(f"run store {runs} is a file, not a folder")
    # the pages' heavy imports (JAX, plotly, pandas, networkx) now rather than on the first visit: a fast first paint
    from gradlens import report  # noqa: F401
    from gradlens.analysis import paths  # noqa: F401
    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(command(runs, port, address), prog_name="streamlit", standalone_mode=False)
