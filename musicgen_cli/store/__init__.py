"""Where models live: the manifest of names, the on-disk cache, resolving a name to a folder,
hub downloads and which repo files a model needs. Nothing here loads a model."""
