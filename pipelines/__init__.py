"""DALI graphs (`@pipeline_def`) and the iterator that turns their outputs into a `Batch`.

- `graph.py`: the one clip graph (train and eval, CPU and GPU): crop window -> resize -> flip + normalise;
- `decode.py`: the CPU decode strategies that feed it (PyAV, torchcodec), exact frames from the key frame before;
- `loader.py`: `train_loader` / `eval_loader`, the engine's entry points (plan -> decode -> graph -> Batch).
"""
