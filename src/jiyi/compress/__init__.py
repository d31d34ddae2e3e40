"""Make a fine-tuned model smaller and faster: prune attention heads, distill into fewer layers."""
