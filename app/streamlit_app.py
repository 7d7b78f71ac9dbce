"""The gradlens app, for `streamlit run` from a checkout (`gradlens app` serves the same app from the package):

    streamlit run app/streamlit_app.py -- --runs gradlens-runs
"""
from gradlens.app.navigation import run

run()
