package dev.dsmoe.data;

/** One document of a corpus: a file, a zip entry or a JSONL line; {@code bytes} is its UTF-8 size. */
public record Document(String name, String text, long bytes) {}
