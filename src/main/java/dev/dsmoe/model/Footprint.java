package dev.dsmoe.model;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/**
 * The memory a model, its training state or its inference state will take, worked out before
 * any of it is allocated, so that a run that cannot fit is refused at the start rather than
 * dying of {@link OutOfMemoryError} minutes in. Each part comes from the sizes the allocating code
 * itself uses ({@link ParamLayout#totalSize()}, {@link Activations#footprint},
 * {@code KvCache.bytes}, {@code Rope.tableFloats}), not from a separate formula.
 *
 * <p>Heap parts are Java arrays (limited by the heap, {@code -Xmx}); native parts are
 * memory-mapped files and off-heap buffers (limited by the machine's memory).
 * {@link #longestArray()} is the most elements any one array of the plan has: a Java array holds
 * at most {@link ParamLayout#MAX_ARRAY_LENGTH}, whatever the heap. Sizes are non-negative and
 * saturate at {@link Long#MAX_VALUE}.
 */
public record Footprint(List<Part> parts, long longestArray) {

    /** Where a part lives. */
    public enum Where { HEAP, NATIVE }

    /** One named part, e.g. "activations", 1.2 GB on the heap. */
    public record Part(String what, Where where, long bytes) {}

    public static final Footprint NONE = new Footprint(List.of(), 0);

    public Footprint {
        parts = List.copyOf(parts);
    }

    /** One heap part whose longest array has {@code longestArray} elements. */
    public static Footprint heap(String what, long bytes, long longestArray) {
        return new Footprint(List.of(new Part(what, Where.HEAP, bytes)), longestArray);
    }

    /** One native part (a mapped file, off-heap buffers). */
    public static Footprint offHeap(String what, long bytes) {
        return new Footprint(List.of(new Part(what, Where.NATIVE, bytes)), 0);
    }

    /** Both plans together; parts of the same name and place are added up. */
    public Footprint plus(Footprint o) {
        List<Part> all = new ArrayList<>(parts);
        for (Part p : o.parts) {
            int i = indexOf(all, p.what, p.where);
            if (i < 0) all.add(p);
            else all.set(i, new Part(p.what, p.where, saturatedAdd(all.get(i).bytes, p.bytes)));
        }
        return new Footprint(all, Math.max(longestArray, o.longestArray));
    }

    private static int indexOf(List<Part> parts, String what, Where where) {
        for (int i = 0; i < parts.size(); i++) {
            if (parts.get(i).what.equals(what) && parts.get(i).where == where) return i;
        }
        return -1;
    }

    /** Bytes of all parts in {@code where}. */
    public long bytes(Where where) {
        long sum = 0;
        for (Part p : parts) if (p.where == where) sum = saturatedAdd(sum, p.bytes);
        return sum;
    }

    public long heapBytes() {
        return bytes(Where.HEAP);
    }

    public long nativeBytes() {
        return bytes(Where.NATIVE);
    }

    /** {@code a + b}, or {@link Long#MAX_VALUE} past it: a size no machine has stays one. */
    public static long saturatedAdd(long a, long b) {
        long s = a + b;
        return s < 0 ? Long.MAX_VALUE : s;
    }

    /** The parts in {@code where}, largest first. */
    public List<Part> largest(Where where) {
        List<Part> l = new ArrayList<>();
        for (Part p : parts) if (p.where == where && p.bytes > 0) l.add(p);
        l.sort(Comparator.comparingLong(Part::bytes).reversed());
        return Collections.unmodifiableList(l);
    }
}
