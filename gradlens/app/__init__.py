"""The gradlens app: HWM versus AWM gradient behaviour beside policy learning curves, read from a run store.

`gradlens app --runs DIR [--port N]` serves it (`server.serve`); `main.py` is the entry script Streamlit runs, and
`app_pages/` holds one script per page (Overview, Gradient paths, Jacobians, Landscapes, Learning curves, Run an
audit; not `pages/`, which would switch Streamlit to its older directory-based navigation).
The app computes nothing the library does not expose; its modules only read, arrange and draw:

    store      cached reads of the run store, keyed by the files' modification times
    selection  the sidebar every page shares (run store, audit run in view) and the messages about bad runs
    reading    a plain-language reading of an audit, generated from its numbers
    figures    the dependency-graph drawing, the path-length histogram, report subsets for the plots
    live       bounded live audits and the one-click demo, stored through `gradlens.report.run_audit`
    server     `serve`: the Streamlit server, in this process
"""
