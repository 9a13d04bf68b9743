"""quartermaster.operator"""
