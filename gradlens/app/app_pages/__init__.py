"""The app's pages: scripts that `gradlens/app/main.py` hands to `st.navigation`, one per page (never imported)."""
