"""The unit atlas: per study, a static HTML site of every map's OIP beside its dataset exemplars,
across variants and seeds (:mod:`~cnnscope.atlas.site`), drawn from sprite sheets
(:mod:`~cnnscope.atlas.sprites`)."""

from cnnscope.atlas.site import AtlasError, NetworkLayer, folder_size, write_atlas

__all__ = ["AtlasError", "NetworkLayer", "folder_size", "write_atlas"]
