package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class KernelsTest {

    @Test
    void parsesBackendNamesAndRejectsOthers() {
        assertEquals(Kernels.Backend.BLAS, Kernels.parse("blas"));
        assertEquals(Kernels.Backend.JAVA, Kernels.parse(" Java "));
        assertEquals(Kernels.Backend.AUTO, Kernels.parse("auto"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Kernels.parse("cuda"));
        assertTrue(e.getMessage().contains("use auto, blas or java"), e.getMessage());
    }

    @Test
    void selectsTheRequestedBackend() {
        try {
            assertEquals("java", Kernels.select(Kernels.Backend.JAVA).name());
            assertEquals("blas", Kernels.select(Kernels.Backend.BLAS).name());
            Kernels.chooseAutoWith(null);
            assertEquals("blas", Kernels.select(Kernels.Backend.AUTO).name(), "OpenBLAS ships in the classifier jar");
            assertEquals("blas", Kernels.gemm().name());
            Kernels.chooseAutoWith(() -> Kernels.Backend.JAVA);
            assertEquals("java", Kernels.select(Kernels.Backend.AUTO).name(), "auto takes the chooser's pick once OpenBLAS loads");
        } finally {
            Kernels.chooseAutoWith(null); // the CLI installs its own again (Main.commandLine)
            Kernels.select(Kernels.Backend.BLAS);
        }
    }

    /** The measurement auto chooses by: both backends timed on the same products, both plausible. */
    @Test
    void measuresBothBackends() {
        Kernels.Speed s = Kernels.measure();
        assertTrue(s.blasGflops() > 1 && s.blasGflops() < 1e5, s.toString());
        assertTrue(s.javaGflops() > 1 && s.javaGflops() < 1e5, s.toString());
    }

    @Test
    void gemmRejectsOperandsThatDoNotFit() {
        Gemm g = new JavaGemm();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> g.matmul(new float[5], new float[6], new float[4], 2, 2, 3, false));
        assertTrue(e.getMessage().contains("A [2 x 3"), e.getMessage());
    }
}
