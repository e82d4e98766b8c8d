"""A structure-aware mutation fuzzer of the ONNX loader and the commands' input paths.

``seeds`` builds small models holding weights in every storage form, ``mutate`` damages them (bytes,
varints, lengths, protobuf fields, external data, subgraphs, metadata, the files next to the model),
``oracle`` runs the readers on each input and reports anything but success or an ``InputError``,
``run`` is the command line (``python -m tests.fuzz.run``). See docs/fuzzing.md.
"""
