"""GILL (Koh, Fried, Salakhutdinov 2023): an inference re-implementation that loads the released checkpoint.

Written from the released checkpoint's structure (not copied from the official code; docs/protocols.md
records where it follows ``gill/models.py``) so that the released
``pretrained_ckpt.pth.tar``, ``model_args.json`` and ``decision_model.pth.tar`` run on current transformers
and diffusers. Modules, in the order data flows:

* ``tokenizer``  the [IMG] token additions and their id checks;
* ``checkpoint`` ``model_args.json`` and the checkpoint loader (key names, shapes, the 8 [IMG] rows);
* ``mapper``     the heads: GILLMapper (generation), the linear retrieval head, the visual prefix;
* ``decision``   the official retrieve-or-generate MLP;
* ``model``      the assembled model: context embedding, decoding, the SD call;
* ``load``       building the model from hub ids / local folders (offline-aware);
* ``tiny``       a tiny GILL in the official layout for tests and the quickstart;
* ``adapter``    the ``gill`` / ``tiny-gill`` entries of the model registry.
"""
