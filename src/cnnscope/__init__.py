"""cnnscope: what do the feature maps of convolutional networks extract?

The library is split by concern (see README): ``data`` prepares tensors, ``models`` builds
networks with stable layer names, ``training`` fits them with Lightning, ``activations`` captures
layer outputs, ``analysis`` turns them into numbers, ``oip`` finds the inputs a map reacts to,
``viz`` draws, ``report`` assembles ``reports/README.md``.
"""

__version__ = "0.1.0"
