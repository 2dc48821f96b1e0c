package dev.dsmoe.model;

import java.lang.reflect.Array;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.ArrayDeque;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;
import java.util.function.Predicate;

/**
 * What an object really holds: the payload bytes (no headers) of every distinct array reachable
 * from it through the instance fields of this project's classes, for checking {@link Footprint}
 * estimates against allocations. JDK objects are not entered; {@code skip} leaves out shared
 * objects (a model's config, its parameter buffer, a data source).
 */
public final class HeapArrays {

    private HeapArrays() {}

    public static long bytes(Object root, Predicate<Object> skip) {
        Set<Object> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        ArrayDeque<Object> todo = new ArrayDeque<>();
        todo.push(root);
        long total = 0;
        while (!todo.isEmpty()) {
            Object o = todo.pop();
            if (!seen.add(o) || (o != root && skip.test(o))) continue;
            Class<?> k = o.getClass();
            if (k.isArray()) {
                Class<?> e = k.getComponentType();
                int n = Array.getLength(o);
                if (e.isPrimitive()) {
                    total += (long) n * elementBytes(e);
                } else {
                    for (int i = 0; i < n; i++) {
                        Object x = Array.get(o, i);
                        if (x != null) todo.push(x);
                    }
                }
                continue;
            }
            if (!k.getName().startsWith("dev.dsmoe.") || k.isEnum()) continue;
            for (Class<?> c = k; c != null && c != Object.class; c = c.getSuperclass()) {
                for (Field f : c.getDeclaredFields()) {
                    if (Modifier.isStatic(f.getModifiers()) || f.getType().isPrimitive()) continue;
                    try {
                        f.setAccessible(true);
                        Object v = f.get(o);
                        if (v != null) todo.push(v);
                    } catch (ReflectiveOperationException | RuntimeException ex) {
                        throw new IllegalStateException("cannot read " + f, ex);
                    }
                }
            }
        }
        return total;
    }

    private static int elementBytes(Class<?> e) {
        if (e == long.class || e == double.class) return 8;
        if (e == int.class || e == float.class) return 4;
        if (e == short.class || e == char.class) return 2;
        return 1;
    }
}
