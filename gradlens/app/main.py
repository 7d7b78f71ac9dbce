"""The app's entry script inside the package (what `gradlens app --runs DIR` serves; `app/streamlit_app.py` at the
repository's top level is the same app for `streamlit run`).

    streamlit run gradlens/app/main.py -- --runs DIR
"""
from gradlens.app.navigation import run

run()
