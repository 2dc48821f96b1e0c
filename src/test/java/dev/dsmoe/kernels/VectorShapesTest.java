package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;
import org.junit.jupiter.api.Test;

/**
 * One vector shape per element type in all of the engine's code, and the preferred one for
 * floats. The JIT's type profiles inside the Vector API's shared methods (a {@code FloatVector}
 * method is one method for every float shape) are filled by whichever shapes run first; a second
 * float shape used by training (the gradient norm's half-width species) made the inference
 * kernels compiled after it in the same process lose their intrinsics: the quickstart timed MoE
 * decode at 0.1-0.5x of its speed in a fresh process. Species are static final fields here by
 * convention, so the check reads those fields of every class of the main code.
 */
class VectorShapesTest {

    @Test
    void oneShapePerElementTypeAndPreferredFloats() throws Exception {
        Map<String, VectorShape> shapeOf = new TreeMap<>();
        Map<String, String> firstSeen = new TreeMap<>();
        List<String> problems = new ArrayList<>();
        int fields = 0;
        for (Class<?> c : mainClasses()) {
            for (Field f : c.getDeclaredFields()) {
                if (!Modifier.isStatic(f.getModifiers()) || !VectorSpecies.class.isAssignableFrom(f.getType())) continue;
                f.setAccessible(true);
                VectorSpecies<?> s = (VectorSpecies<?>) f.get(null);
                if (s == null) continue;
                fields++;
                String where = c.getName() + "." + f.getName(), type = s.elementType().getName();
                if (s.elementType() == float.class && s.vectorShape() != FloatVector.SPECIES_PREFERRED.vectorShape()) {
                    problems.add(where + " is " + s + ", not the preferred float species");
                }
                VectorShape seen = shapeOf.putIfAbsent(type, s.vectorShape());
                firstSeen.putIfAbsent(type, where);
                if (seen != null && seen != s.vectorShape()) {
                    problems.add(where + " is " + s + " but " + firstSeen.get(type) + " uses " + seen + " for " + type);
                }
            }
        }
        assertTrue(fields >= 5, "found only " + fields + " species fields: is the class scan looking in the right place?");
        assertTrue(problems.isEmpty(), String.join("\n", problems));
    }

    /** Every class compiled from src/main (Maven runs the tests against target/classes). */
    private static List<Class<?>> mainClasses() throws IOException, URISyntaxException, ClassNotFoundException {
        Path root = Path.of(GradNorm.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        assertTrue(Files.isDirectory(root), "the main classes are not a directory: " + root);
        List<Class<?>> out = new ArrayList<>();
        try (Stream<Path> s = Files.walk(root)) {
            for (Path p : s.filter(x -> x.toString().endsWith(".class")).toList()) {
                String name = root.relativize(p).toString().replace(java.io.File.separatorChar, '.');
                out.add(Class.forName(name.substring(0, name.length() - ".class".length()), false, GradNorm.class.getClassLoader()));
            }
        }
        assertFalse(out.isEmpty(), "no classes under " + root);
        return out;
    }
}
