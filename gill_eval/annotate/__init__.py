"""The retrieve-or-generate human study as a kit (docs/annotation.md).

``tasks`` builds the items (generated image, top-1 retrieved image, randomised A/B order); ``items`` is the
task file; ``page`` (static HTML), ``labelstudio`` and ``crowd`` hand the items to annotators and read their
answers back as ``votes.Vote`` records; ``collect`` undoes the A/B order and writes the official vote and
label files; ``agreement`` computes the inter-annotator statistics; ``labels`` reads a collected folder
for the decision classifier; ``cli`` is ``gill-eval annotate``.
"""
