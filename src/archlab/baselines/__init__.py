"""The index of baselines (models papers compare against): slug -> package path. Sorted."""

INDEX: dict[str, str] = {
    "bert": "archlab.baselines.bert",
    "gpt2": "archlab.baselines.gpt2",
    "lstm_seq2seq": "archlab.baselines.lstm_seq2seq",
    "mlp_mixer": "archlab.baselines.mlp_mixer",
    "resnet": "archlab.baselines.resnet",
    "unet": "archlab.baselines.unet",
    "vit": "archlab.baselines.vit",
}
