#version 330 core
// Kept-token grid: one texel per token (NEAREST), 0 = pruned (leaves the video untouched),
// 1 = kept (tinted). Output is premultiplied.
in vec2 vUv;
uniform sampler2D uGrid;
uniform float uOpacity;
out vec4 fragColor;

void main()
{
    float v = clamp(texture(uGrid, vUv).r, 0.0, 1.0);
    vec3 colour = mix(vec3(1.0, 0.85, 0.1), vec3(1.0, 0.15, 0.05), v);
    float a = uOpacity * v;
    fragColor = vec4(colour * a, a);
}
