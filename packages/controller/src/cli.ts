export async function main(_a: string[]): Promise<void> {}
