"""The peer for `bench/speed.py --peer`: Hugging Face's `CLIPModel` of a ViT variant's architecture (random
weights, built from a local `CLIPConfig`, nothing downloaded), exported with optimum's ONNX exporter and
optimised with optimum's ORTOptimizer (level 2: onnxruntime's transformer fusions).

    pip install --target /tmp/peer-deps --no-deps "transformers==4.57.6" "optimum==2.1.0" \\
        "optimum-onnx==0.1.0" "huggingface_hub==0.36.0" "tokenizers==0.22.1" safetensors regex
    PYTHONPATH=/tmp/peer-deps python bench/peer.py ViT-B/32 -o /tmp/peer-vit-b-32
    python bench/speed.py --variant ViT-B/32 --peer /tmp/peer-vit-b-32

optimum-onnx 0.1.0 needs transformers < 4.58, which needs huggingface_hub < 1.0, so its dependencies
live in a folder of their own, put first on PYTHONPATH for this script only; torch, onnx and
onnxruntime come from the project's environment. The folder written holds `model.onnx` (optimum's
export of `CLIPModel.forward`: input_ids, attention_mask, pixel_values -> logits) and
`model_optimized.onnx`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporter.variants import get_variant  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", help="a ViT variant (Hugging Face's CLIPModel has no ResNet tower)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    import torch
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig
    from transformers import CLIPConfig, CLIPModel

    a = get_variant(args.variant).architecture
    if a.family != "ViT":
        sys.exit(f"{args.variant}: Hugging Face's CLIPModel has no ResNet tower; choose a ViT variant")
    config = CLIPConfig(
        text_config={"hidden_size": a.transformer_width, "intermediate_size": 4 * a.transformer_width,
                     "num_hidden_layers": a.transformer_layers, "num_attention_heads": a.transformer_heads,
                     "vocab_size": a.vocab_size, "max_position_embeddings": a.context_length,
                     "hidden_act": "quick_gelu", "bos_token_id": a.vocab_size - 2, "eos_token_id": a.vocab_size - 1},
        vision_config={"hidden_size": a.vision_width, "intermediate_size": 4 * a.vision_width,
                       "num_hidden_layers": a.vision_layers, "num_attention_heads": a.vision_width // 64,
                       "image_size": a.image_resolution, "patch_size": a.vision_patch_size, "hidden_act": "quick_gelu"},
        projection_dim=a.embed_dim)
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(args.output / "hf")
    started = time.perf_counter()
    main_export(str(args.output / "hf"), output=args.output, task="zero-shot-image-classification")
    ORTOptimizer.from_pretrained(args.output).optimize(
        save_dir=args.output, optimization_config=OptimizationConfig(optimization_level=2))
    print(f"optimum export and optimisation of {args.variant}: {time.perf_counter() - started:.0f} s -> {args.output}")


if __name__ == "__main__":
    main()
