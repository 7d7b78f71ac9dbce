"""Tasks of the Myriad optimal-control testbed (Howe et al. 2022), written from their ODEs (see MYRIAD.md)."""
