"""Rich views of what the library reports: the live generation panel, download and phase
reporter, batch progress, memory plans and import reports. The only place Rich is used."""
