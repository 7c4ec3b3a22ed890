"""The index of baselines (models papers compare against): slug -> package path. Sorted."""

INDEX: dict[str, str] = {
    "lstm_seq2seq": "archlab.baselines.lstm_seq2seq",
    "resnet": "archlab.baselines.resnet",
    "vit": "archlab.baselines.vit",
}
