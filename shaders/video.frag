#version 330 core
// The camera frame: opaque. BGR is swizzled at upload (GL_BGR), so this reads RGB.
in vec2 vUv;
uniform sampler2D uTex;
out vec4 fragColor;

void main()
{
    fragColor = vec4(texture(uTex, vUv).rgb, 1.0);
}
