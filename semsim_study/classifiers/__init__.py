"""The study's classifiers, one module a job:

- ``backbones``: the network definitions, by name (torch);
- ``grid``: the models and training settings params name (plain data, no torch), the default
  classifier of a dataset;
- ``checkpoints``: one ``load`` of a trained model and its card, one ``predict`` (every stage
  that only reads a trained classifier uses these two);
- ``training``: the training loop, its optimiser config and the model card it writes (only the
  train stages import it).

Nothing is imported here, so ``from semsim_study.classifiers import grid`` stays free of torch.
"""
