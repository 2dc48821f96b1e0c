package dev.dsmoe.data;

import java.io.IOException;
import java.util.function.Consumer;

/**
 * A corpus: documents read in a fixed order. Files that are not valid UTF-8 (and JSONL lines
 * that are not) are skipped and counted, never read as text. Open one with {@link TextSources#open}.
 */
public interface TextSource {

    /** What this is, for meta.json and messages, e.g. {@code zip /path/src.zip (glob **)}. */
    String description();

    /** Raw bytes {@link #read} will go through (for progress and ETA). */
    long totalBytes();

    /** Changes when the input changes: paths, sizes and modification times. */
    String fingerprint() throws IOException;

    /** Sends every document to {@code sink}, in order; returns the counts of this pass. */
    ReadStats read(Consumer<Document> sink) throws IOException;

    /**
     * Counts of one pass: documents read, their bytes, and inputs skipped because they are not
     * UTF-8 (files, or lines of a JSONL file), with the first one skipped.
     */
    record ReadStats(long documents, long bytes, long skipped, String firstSkipped) {
        static final ReadStats NONE = new ReadStats(0, 0, 0, null);

        ReadStats plus(ReadStats o) {
            return new ReadStats(documents + o.documents, bytes + o.bytes, skipped + o.skipped,
                    firstSkipped != null ? firstSkipped : o.firstSkipped);
        }
    }
}
